"""Built-in Triton kernels, one folder per op. Importing this selects the backend first,
so that TRITON_INTERPRET=1 is set before triton is imported on machines without CUDA."""
from fla_check.backend import select_backend

select_backend()
