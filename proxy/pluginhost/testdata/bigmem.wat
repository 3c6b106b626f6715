;; bigmem: declares 2000 pages (125 MiB) of initial memory, more than a 64 MiB limit allows.
(module
  (memory (export "memory") 2000)
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_on_message") (result i32) i32.const 0))
