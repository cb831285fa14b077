"""Neural machine translation with an encoder-decoder Transformer (TensorFlow/Keras + Hydra)."""

import os

# TensorFlow's BFC allocator for CPU memory keeps freed blocks for reuse. The default one (glibc
# malloc) maps every block over 32 MB afresh and unmaps it when it is freed, and one training
# step's logits alone are 131 MB (4,096 tokens x 8,000 pieces x 4 bytes): every step faulted those
# pages in again, and the kernel took a fifth of the CPU. With BFC, a Multi30k training step
# costs 22% less CPU time. TensorFlow reads this when it first allocates, so it is set on import;
# TF_CPU_ALLOCATOR_USE_BFC=false in the environment keeps the default allocator. (Where TensorFlow
# turns oneDNN on, on CPUs with AVX512_VNNI/BF16 or AMX, oneDNN's allocator reuses blocks anyway.)
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
