//go:build !unix

package audit

func dirWritable(string) error { return nil }
