;; busy: detects concurrent use of one instance. The message hook sets a flag in memory, spins a while, and clears
;; it; entering while the flag is set traps.
(module
  (memory (export "memory") 1)
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_on_message") (result i32)
    (local $i i32)
    (if (i32.load (i32.const 0)) (then unreachable))
    (i32.store (i32.const 0) (i32.const 1))
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $spin (i32.lt_u (local.get $i) (i32.const 20000))))
    (i32.store (i32.const 0) (i32.const 0))
    i32.const 0))
