;; abi2: claims ABI version 2.
(module
  (memory (export "memory") 1)
  (func (export "postern_abi_version") (result i32) i32.const 2)
  (func (export "postern_on_message") (result i32) i32.const 0))
