;; profiled: a guest whose time profile is known, for the guest profiler's tests. The message hook calls $hot,
;; which loops 200,000 times, and $cold, which loops 10 times, and asks the host for the part count.
(module
  (import "postern" "part_count" (func $part_count (result i32)))
  (memory (export "memory") 1)
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func $spin (param $n i32)
    (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n)))))
  (func $hot (call $spin (i32.const 200000)))
  (func $cold (call $spin (i32.const 10)))
  (func (export "postern_on_message") (result i32)
    (call $hot)
    (call $cold)
    (drop (call $part_count))
    i32.const 0))
