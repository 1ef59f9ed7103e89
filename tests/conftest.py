import torch

# Tests run many tiny tensor ops: one thread avoids oversubscription on shared 2-core machines.
torch.set_num_threads(1)
