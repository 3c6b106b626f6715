package pop3

import (
	"bufio"
	"io"
)

// TopLength returns how many leading bytes of a message TOP msg n serves (RFC 1939 §7): the header, the blank
// line after it, and the first n lines of the body. A message without a blank line is all header; fewer body
// lines than n serve the whole message. Lines of any length are counted without being held in memory.
func TopLength(content io.ReaderAt, size int64, n int) (int64, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(content, 0, size), 16<<10)
	var off int64 // where the line being read starts
	inHeader := true
	for {
		if !inHeader && n == 0 {
			return off, nil
		}
		// Read one whole line; only its length and whether it is empty matter.
		var length int64
		first := true
		blank := false
		for {
			frag, err := br.ReadSlice('\n')
			if first {
				blank = string(frag) == "\r\n" || string(frag) == "\n"
				first = false
			}
			length += int64(len(frag))
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF {
				return size, nil
			}
			if err != nil {
				return 0, err
			}
			break
		}
		off += length
		if inHeader {
			inHeader = !blank
		} else {
			n--
		}
	}
}
