;; initfail: postern_init logs why and refuses its configuration.
(module
  (import "postern" "log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "missing key \"words\"")
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_init") (result i32)
    (drop (call $log (i32.const 3) (i32.const 0) (i32.const 19)))
    i32.const 1)
  (func (export "postern_on_message") (result i32) i32.const 0))
