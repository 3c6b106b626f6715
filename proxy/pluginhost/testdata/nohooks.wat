;; nohooks: a valid ABI version but no hook export.
(module
  (memory (export "memory") 1)
  (func (export "postern_abi_version") (result i32) i32.const 1))
