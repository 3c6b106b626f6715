;; clock: connect adds the WASI wall clock (ns) as score; message adds 8 bytes of WASI random_get (as an i64) as
;; score. With no grants both must be deterministic.
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "postern" "score_add" (func $score_add (param f64) (result i32)))
  (memory (export "memory") 1)
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_on_connect") (result i32)
    (drop (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 64)))
    (drop (call $score_add (f64.convert_i64_u (i64.load (i32.const 64)))))
    i32.const 0)
  (func (export "postern_on_message") (result i32)
    (drop (call $random_get (i32.const 64) (i32.const 8)))
    (drop (call $score_add (f64.convert_i64_u (i64.load (i32.const 64)))))
    i32.const 0))
