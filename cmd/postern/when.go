package main

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// parseWhen reads a time given on the command line (-since, -until, -from, -to): an age before now ("24h",
// "90m", "7d", with or without a leading "-"), RFC 3339, or a date or date and time without a zone, read as UTC
// like the timestamps of the audit log and the quarantine. "" is the zero time (no bound).
func parseWhen(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	age := strings.TrimPrefix(v, "-")
	if n, ok := strings.CutSuffix(age, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days >= 0 && strconv.Itoa(days) == n {
			return now.AddDate(0, 0, -days), nil
		}
	}
	if d, err := time.ParseDuration(age); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04",
		"2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("want an age before now (24h, 7d), RFC 3339 (2026-03-04T10:00:00Z), or a " +
		"date or date and time in UTC (2026-03-04, 2026-03-04T10:00)")
}
