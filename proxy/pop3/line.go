package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// MinLineLength is the shortest line bound a Reader accepts: RFC 2449 §4 allows commands of 255 octets and
// responses of 512, CRLF included.
const MinLineLength = 512

// ErrLineTooLong is returned for a command or status line longer than the reader's bound. The rest of the line
// is not read: the connection cannot be resynchronised and should be closed after the error reply.
var ErrLineTooLong = errors.New("pop3: line too long")

// readLine reads one line, CRLF or LF terminated, of at most max bytes terminator included, and returns it
// without the terminator. The slice is valid until the next read from br.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var long []byte // only for lines longer than br's buffer
	for {
		frag, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if len(long)+len(frag) > max {
				return nil, ErrLineTooLong
			}
			long = append(long, frag...)
			continue
		}
		if err != nil {
			if err == io.EOF && len(long)+len(frag) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		line := frag
		if long != nil {
			line = append(long, frag...)
		}
		if len(line) > max {
			return nil, ErrLineTooLong
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
		return line, nil
	}
}
