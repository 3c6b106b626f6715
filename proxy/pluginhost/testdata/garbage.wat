;; garbage: connect returns 7; mail_from sets a valid reject, then an invalid kind 9 (ERR_INVALID, verdict kept)
;; and adds the result as score; rcpt_to rejects with code 250 (ERR_INVALID) and adds the result as score;
;; message calls proc_exit(3).
(module
  (import "postern" "set_verdict" (func $set_verdict (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "postern" "score_add" (func $score_add (param f64) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "no")
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_on_connect") (result i32) i32.const 7)
  (func (export "postern_on_mail_from") (result i32)
    (drop (call $set_verdict (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 2)))
    (drop (call $score_add (f64.convert_i32_s
      (call $set_verdict (i32.const 9) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))))
    i32.const 0)
  (func (export "postern_on_rcpt_to") (result i32)
    (drop (call $score_add (f64.convert_i32_s
      (call $set_verdict (i32.const 1) (i32.const 250) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 2)))))
    i32.const 0)
  (func (export "postern_on_message") (result i32)
    (call $proc_exit (i32.const 3))
    i32.const 0))
