;; hugelog: connect logs one 5000-byte line (over the 4 KiB line budget); message logs 20 lines of 4000 bytes
;; (over the 64 KiB call budget); mail_from logs one short line and succeeds.
(module
  (import "postern" "log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "hello from the guest")
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_on_connect") (result i32)
    (drop (call $log (i32.const 1) (i32.const 0) (i32.const 5000)))
    i32.const 0)
  (func (export "postern_on_mail_from") (result i32)
    (drop (call $log (i32.const 2) (i32.const 0) (i32.const 20)))
    i32.const 0)
  (func (export "postern_on_message") (result i32)
    (local $i i32)
    (loop $more
      (drop (call $log (i32.const 1) (i32.const 0) (i32.const 4000)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 20))))
    i32.const 0))
