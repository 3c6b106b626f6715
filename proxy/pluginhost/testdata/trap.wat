;; trap: the message hook tags, adds score, and then executes `unreachable` (what it set must be dropped);
;; connect succeeds.
(module
  (import "postern" "tag_add" (func $tag_add (param i32 i32 i32 i32) (result i32)))
  (import "postern" "score_add" (func $score_add (param f64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "kv")
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_on_connect") (result i32) i32.const 0)
  (func (export "postern_on_message") (result i32)
    (drop (call $tag_add (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 1)))
    (drop (call $score_add (f64.const 5)))
    unreachable))
