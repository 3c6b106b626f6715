;; initexit: _initialize calls proc_exit(0): the module is gone before postern_init.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_initialize") (call $proc_exit (i32.const 0)))
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_on_message") (result i32) i32.const 0))
