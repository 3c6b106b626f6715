// Command gen writes the evasion corpus: techniques.tsv (the list, kept in git) and messages/<id>.eml (the
// messages, ignored by git because they carry the EICAR test file).
//
//	go run ./internal/evasion/gen -out testdata/evasion
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/postern/postern/internal/evasion"
)

func main() {
	out := flag.String("out", "testdata/evasion", "the corpus folder")
	flag.Parse()
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func write(dir string) error {
	msgs := filepath.Join(dir, "messages")
	if err := os.MkdirAll(msgs, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "techniques.tsv"), []byte(evasion.TSV()), 0o644); err != nil {
		return err
	}
	for _, c := range evasion.Cases() {
		if err := os.WriteFile(filepath.Join(msgs, c.ID+".eml"), c.Raw, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("%d messages in %s\n", len(evasion.Cases()), msgs)
	return nil
}
