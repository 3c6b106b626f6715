package testpostgres

import (
	"database/sql"
	"testing"
)

func TestStart(t *testing.T) {
	c := Start(t)
	a, b := c.NewDatabase(), c.NewDatabase()
	if a == b {
		t.Fatalf("two databases with one DSN %s", a)
	}
	db, err := sql.Open("pgx", a)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var one int
	if err := db.QueryRow("SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1: %d, %v", one, err)
	}
}
