;; badsig: its message hook takes a parameter, which the ABI's () -> i32 does not allow.
(module
  (memory (export "memory") 1)
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_on_message") (param i32) (result i32) i32.const 0))
