package postern

import "strconv"

// Errno is a negative result of a host function (ABI §3.1). The four codes of ABI v1 are the Err values below;
// a newer host may return others, which keep their number.
//
// The SDK returns these values unwrapped, so an absent header costs no allocation; compare with errors.Is.
type Errno int32

// The error codes of ABI v1.
const (
	ErrNotFound    Errno = -1 // no such header, field, part attribute, or index past the last one
	ErrInvalid     Errno = -2 // an argument the host does not accept (bad name, CR/LF in a value, bad part id, ...)
	ErrUnavailable Errno = -3 // not available at this hook (a header during OnRcptTo, a change during OnConnect)
	ErrDecode      Errno = -4 // the part's content cannot be decoded in that mode; its raw bytes still can
)

// Error describes the code; unknown codes keep their number.
func (e Errno) Error() string {
	switch e {
	case ErrNotFound:
		return "postern: not found"
	case ErrInvalid:
		return "postern: invalid argument"
	case ErrUnavailable:
		return "postern: not available at this hook"
	case ErrDecode:
		return "postern: content cannot be decoded"
	}
	return "postern: host error " + strconv.Itoa(int(e))
}

// boxed holds the ABI v1 codes already converted to error: converting an Errno to an interface allocates, and
// "not found" is a hot, ordinary result.
var boxed = [...]error{ErrNotFound, ErrInvalid, ErrUnavailable, ErrDecode}

// errno returns the error for a negative host result.
func errno(rc int32) error {
	if rc < 0 && rc >= -int32(len(boxed)) {
		return boxed[-rc-1]
	}
	return Errno(rc)
}

// status turns a host function's result into an error: nil for 0 or more, an Errno for a negative value.
func status(rc int32) error {
	if rc >= 0 {
		return nil
	}
	return errno(rc)
}
