package postern

import (
	"errors"
	"math"
	"unsafe"
)

// Every host function that returns data uses the full-length protocol (ABI §3.1): it writes at most limit bytes
// and returns the whole length. The SDK reads into one package-level scratch buffer and, when the value did not
// fit, grows it and asks again. Values larger than maxScratch get a buffer of their own, so one huge header
// block does not pin megabytes for the life of the instance.
const (
	minScratch = 4 << 10
	maxScratch = 64 << 10
)

var scratch = make([]byte, minScratch)

// errUnstable is returned when a value grows between two reads of the same call, which a correct host never
// does; it stops the retry loop from running forever.
var errUnstable = errors.New("postern: host value changed size between two reads")

// bufPtr returns the address of b's first byte, or nil for an empty b (ABI: limit 0 ignores buf).
func bufPtr(b []byte) *byte {
	if len(b) == 0 {
		return nil
	}
	return &b[0]
}

// limit returns len(b) as a uint32; wasm32 memory cannot hold more, so the clamp only matters on 64-bit test
// builds.
func limit(b []byte) uint32 {
	if len(b) > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(len(b))
}

// growSize returns the capacity to use for a value of need bytes: at least minScratch, rounded up to a power
// of two so that values of slowly increasing size do not reallocate every time.
func growSize(need int) int {
	n := minScratch
	for n < need && n < math.MaxInt/2 {
		n *= 2
	}
	if n < need {
		return need
	}
	return n
}

// fetch calls read with a buffer until the value fits and returns it. When owned is false the result aliases
// the scratch buffer: callers copy it (usually by converting to string) before the next host call. When owned is
// true the value was too large for the scratch buffer and got a fresh buffer the caller may keep.
func fetch(read func(buf *byte, limit uint32) int32) (b []byte, owned bool, err error) {
	buf := scratch
	for range 3 {
		n := read(bufPtr(buf), limit(buf))
		if n < 0 {
			return nil, false, errno(n)
		}
		if int(n) <= len(buf) {
			return buf[:n], owned, nil
		}
		if n <= maxScratch {
			scratch = make([]byte, growSize(int(n)))
			buf, owned = scratch, false
		} else {
			buf, owned = make([]byte, n), true
		}
	}
	return nil, false, errUnstable
}

// fetchString is fetch returning the value as a string of its own.
func fetchString(read func(buf *byte, limit uint32) int32) (string, error) {
	b, owned, err := fetch(read)
	if err != nil {
		return "", err
	}
	if owned {
		return ownString(b), nil
	}
	return string(b), nil
}

// ownString returns b as a string without copying. b must be a fresh buffer that nothing else refers to.
func ownString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// i32 converts an int argument (a part id, a reply code) to the ABI's int32. Values that do not fit become -1,
// which the host rejects as ERR_INVALID rather than silently wrapping to some other valid id.
func i32(v int) int32 {
	if v < math.MinInt32 || v > math.MaxInt32 {
		return -1
	}
	return int32(v)
}
