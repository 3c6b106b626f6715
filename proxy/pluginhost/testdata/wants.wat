;; wants: declares with postern_wants the message shapes its message hook is for (the value at memory offset 0,
;; set by postern_init from the configuration's first byte: "1" files, "9" files and an unknown bit), and tags
;; every message it is called on with ran=1.
(module
  (import "postern" "config_get" (func $config_get (param i32 i32) (result i32)))
  (import "postern" "tag_add" (func $tag_add (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "ran1")
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_init") (result i32)
    (drop (call $config_get (i32.const 32) (i32.const 1)))
    (if (i32.eq (i32.load8_u (i32.const 32)) (i32.const 0x31)) (then (i32.store (i32.const 0) (i32.const 1))))
    (if (i32.eq (i32.load8_u (i32.const 32)) (i32.const 0x39)) (then (i32.store (i32.const 0) (i32.const 0x80000001))))
    i32.const 0)
  (func (export "postern_wants") (result i32) (i32.load (i32.const 0)))
  (func (export "postern_on_message") (result i32)
    (drop (call $tag_add (i32.const 16) (i32.const 3) (i32.const 19) (i32.const 1)))
    i32.const 0))
