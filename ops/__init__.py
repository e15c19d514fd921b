"""Custom ops: fused bias+activation, upfirdn2d, conv2d_resample and modulated convolution.

Each op has a pure-PyTorch reference (`impl='ref'`) that defines its semantics and a CUDA
extension (`impl='cuda'`) JIT-built on first use; `impl='auto'` (the default) picks the
extension for CUDA tensors when it builds and the reference otherwise.
`GANFORGE_OPS=ref|cuda|auto` overrides the default `impl='auto'` process-wide.
"""
