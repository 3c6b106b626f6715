;; sandbox: probes what WASI exposes. The message hook adds to its score: the number of environment variables,
;; 10 x the number of arguments, 100 if file descriptor 3 is a preopened directory, 1000 if writing to stdout
;; failed. In the sandbox the score is 0.
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "postern" "score_add" (func $score_add (param f64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "hello, stdout\n")
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_on_message") (result i32)
    (drop (call $environ_sizes_get (i32.const 0) (i32.const 4)))
    (drop (call $score_add (f64.convert_i32_u (i32.load (i32.const 0)))))
    (drop (call $args_sizes_get (i32.const 8) (i32.const 12)))
    (drop (call $score_add (f64.convert_i32_u (i32.mul (i32.load (i32.const 8)) (i32.const 10)))))
    (if (i32.eqz (call $fd_prestat_get (i32.const 3) (i32.const 16)))
      (then (drop (call $score_add (f64.const 100)))))
    ;; iovec at 32: {ptr 256, len 14}
    (i32.store (i32.const 32) (i32.const 256))
    (i32.store (i32.const 36) (i32.const 14))
    (if (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40))
      (then (drop (call $score_add (f64.const 1000)))))
    i32.const 0))
