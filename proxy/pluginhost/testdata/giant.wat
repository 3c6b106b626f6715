;; giant: the message hook adds a header whose value is 70000 bytes (over the 64 KiB budget); connect tries the
;; same (unavailable there: -3) and returns the result negated, so a correct host makes connect fail with 3.
(module
  (import "postern" "header_add" (func $header_add (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "X-Big")
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_on_connect") (result i32)
    (i32.sub (i32.const 0) (call $header_add (i32.const 0) (i32.const 5) (i32.const 16) (i32.const 70000))))
  (func (export "postern_on_message") (result i32)
    (drop (call $header_add (i32.const 0) (i32.const 5) (i32.const 16) (i32.const 70000)))
    i32.const 0))
