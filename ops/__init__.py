"""Custom ops: fused bias+activation, upfirdn2d, conv2d_resample, modulated convolution and filtered_lrelu.

Each op has a pure-PyTorch reference (`impl='ref'`) that defines its semantics and a CUDA
extension (`impl='cuda'`) JIT-built on first use and checked against the reference on its first
run per device and dtype (`_selfcheck`); `impl='auto'` (the default) picks the extension for CUDA
tensors when it builds and passes that check, and the reference otherwise.
`GANFORGE_OPS=ref|cuda|auto` overrides the default `impl='auto'` process-wide.
"""
