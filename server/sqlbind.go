package server

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
)

// dialect is the SQL database a store is kept in. Queries are written once,
// with SQLite's ? placeholders; PostgreSQL's $1, $2… are made from them.
type dialect uint8

const (
	dialectSQLite dialect = iota
	dialectPostgres
)

// sqlConn is what the store needs of a database or a transaction.
type sqlConn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// bound runs queries written with ? placeholders on a connection of the
// given dialect.
type bound struct {
	c sqlConn
	d dialect
}

func (b bound) query(q string) string {
	if b.d != dialectPostgres {
		return q
	}
	return numberPlaceholders(q)
}

func (b bound) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return b.c.ExecContext(ctx, b.query(q), args...)
}

func (b bound) rows(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return b.c.QueryContext(ctx, b.query(q), args...)
}

func (b bound) row(ctx context.Context, q string, args ...any) *sql.Row {
	return b.c.QueryRowContext(ctx, b.query(q), args...)
}

// numberPlaceholders turns each ? outside a quoted string into $1, $2, …
func numberPlaceholders(q string) string {
	var out strings.Builder
	out.Grow(len(q) + 8)
	n, quoted := 0, false
	for i := 0; i < len(q); i++ {
		switch c := q[i]; {
		case c == '\'':
			quoted = !quoted
			out.WriteByte(c)
		case c == '?' && !quoted:
			n++
			out.WriteByte('$')
			out.WriteString(strconv.Itoa(n))
		default:
			out.WriteByte(c)
		}
	}
	return out.String()
}
