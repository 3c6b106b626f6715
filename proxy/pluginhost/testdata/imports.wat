;; imports: imports a function the host lacks, a host function with the wrong signature, and a foreign module.
(module
  (import "postern" "no_such_function" (func (param i32) (result i32)))
  (import "postern" "header_get" (func (param i32 i32) (result i32)))
  (import "env" "abort" (func (param i32)))
  (memory (export "memory") 1)
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_on_message") (result i32) i32.const 0))
