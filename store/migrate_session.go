package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/mire-go/mire/schema"
)

const (
	// cancelInterval is how often a stopped migration's connection is sent
	// a cancel request again, in case one arrived between two statements.
	cancelInterval = 100 * time.Millisecond
	// hardCloseAfter is how long cancel requests may go unanswered before
	// the connection is closed under the driver (a dead network).
	hardCloseAfter = 3 * time.Second
	// cleanupTimeout bounds resolving a migration that ctx stopped.
	cleanupTimeout = 5 * time.Second
	// releaseTimeout bounds restoring a connection before it goes back to
	// the pool.
	releaseTimeout = 5 * time.Second
)

// migrationSession runs golang-migrate on one connection of the store's
// pool. golang-migrate's pgx/v5 driver takes a *sql.DB and runs everything
// with context.Background, on one *sql.Conn it keeps; the session gives it a
// *sql.DB limited to one pool connection, and honours ctx by sending that
// connection cancel requests once ctx ends.
type migrationSession struct {
	store     *EventStore
	database  string
	lockID    int64
	connector *migrationConnector
	db        *sql.DB
	migrator  *migrate.Migrate
	driver    database.Driver
}

func (s *EventStore) newMigrationSession(ctx context.Context, databaseName string, lockID int64) *migrationSession {
	connector := &migrationConnector{
		inner: stdlib.GetPoolConnector(s.pool),
		ctx:   ctx,
		store: s,
	}
	db := sql.OpenDB(connector)
	// One connection, kept between golang-migrate's calls (its Ping and its
	// Conn get the same one), so the session's advisory lock and
	// search_path are those of the connection migrations run on, and a
	// Migrate never holds more than one pool connection.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	return &migrationSession{store: s, database: databaseName, lockID: lockID, connector: connector, db: db}
}

// run opens golang-migrate on the session's connection and runs op. It
// reports whether golang-migrate started running migrations, which may
// leave a dirty version when stopped.
func (m *migrationSession) run(ctx context.Context, op migrateOp) (ranMigrations bool, err error) {
	s := m.store
	stopWatch := m.connector.watch(ctx)
	defer stopWatch()
	defer func() {
		if err != nil {
			// Whatever state the session was left in (a lock, a failed
			// transaction) must not reach the pool.
			m.connector.discardCurrent()
		}
	}()

	conn, err := m.connector.acquire(ctx, m.db)
	if err != nil {
		return false, err
	}
	if op.resolve {
		// Taken before golang-migrate's own lock calls, which wait with
		// context.Background; theirs then nest in this one.
		if err := s.queries.MigrationLock(ctx, s.uncheckedDB(conn), m.lockID); err != nil {
			return false, err
		}
		defer func() {
			if unlockErr := s.queries.MigrationUnlock(ctx, s.uncheckedDB(conn), m.lockID); unlockErr != nil && err == nil {
				err = unlockErr
			}
		}()
	}
	if err := m.open(); err != nil {
		return false, err
	}
	if op.resolve {
		if err := s.resolveDirty(ctx, conn, m.driver); err != nil {
			return false, err
		}
	}
	// Only the migrating operations (those that resolve) run migrations.
	return op.resolve, op.run(m.migrator)
}

func (m *migrationSession) open() error {
	var err error
	m.driver, err = migratepgx.WithInstance(m.db, &migratepgx.Config{
		DatabaseName:    m.database,
		SchemaName:      m.store.schema,
		MigrationsTable: MigrationsTable,
	})
	if err != nil {
		return err
	}
	source, err := iofs.New(schema.Migrations, schema.MigrationsDir)
	if err != nil {
		return err
	}
	m.migrator, err = migrate.NewWithInstance("iofs", source, "pgx5", m.driver)
	return err
}

// close releases the session's connection to the pool, restored, or
// closes it.
func (m *migrationSession) close() {
	var err error
	switch {
	case m.migrator != nil:
		sourceErr, driverErr := m.migrator.Close()
		err = errors.Join(sourceErr, driverErr)
	case m.driver != nil:
		err = m.driver.Close()
	default:
		err = m.db.Close()
	}
	if err != nil {
		// The migration's outcome is already known; a connection that did
		// not close cleanly was discarded rather than returned to the pool.
		m.store.logger.Debug("store: closing the migration session", "schema", m.store.schema, "error", err)
	}
}

// resolveDirtyAfterStop resolves a dirty version on a fresh connection after
// ctx stopped a migration. It waits for the migration lock, which the
// stopped connection holds until its backend has exited, within ctx: a
// migration that takes the lock first resolves the version itself.
func (s *EventStore) resolveDirtyAfterStop(ctx context.Context, databaseName string, lockID int64) (err error) {
	m := s.newMigrationSession(ctx, databaseName, lockID)
	defer m.close()
	stopWatch := m.connector.watch(ctx)
	defer stopWatch()
	defer func() {
		if err != nil {
			m.connector.discardCurrent()
		}
	}()
	conn, err := m.connector.acquire(ctx, m.db)
	if err != nil {
		return err
	}
	if err := s.queries.MigrationLock(ctx, s.uncheckedDB(conn), lockID); err != nil {
		return err
	}
	defer func() {
		if unlockErr := s.queries.MigrationUnlock(ctx, s.uncheckedDB(conn), lockID); unlockErr != nil && err == nil {
			err = unlockErr
		}
	}()
	if err := m.open(); err != nil {
		return err
	}
	return s.resolveDirty(ctx, conn, m.driver)
}

// migrationLockID is the advisory lock key golang-migrate's pgx/v5 driver
// uses for the schema's migrations table.
func migrationLockID(databaseName, schemaName string) (int64, error) {
	id, err := database.GenerateAdvisoryLockId(databaseName, schemaName, MigrationsTable)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(id, 10, 64)
}

// migrationConnector is the database/sql connector of a session: it takes
// connections from the store's pool, sets their search_path to the store's
// schema, and wraps them so that closing one restores its search_path and
// releases it to the pool, or closes it when it cannot be trusted.
type migrationConnector struct {
	inner driver.Connector
	// ctx bounds the wait for a pool connection: database/sql asks for
	// one with context.Background when golang-migrate pings.
	ctx   context.Context
	store *EventStore

	mu      sync.Mutex
	current *migrationConn // the session's connection; at most one is open
}

// Connect implements driver.Connector.
func (c *migrationConnector) Connect(context.Context) (driver.Conn, error) {
	dc, err := c.inner.Connect(c.ctx)
	if err != nil {
		return nil, err
	}
	inner, ok := dc.(*stdlib.Conn)
	if !ok {
		return nil, fmt.Errorf("store: migration connector: %T is not a pgx stdlib connection", dc)
	}
	conn := &migrationConn{Conn: inner, store: c.store}
	pc := inner.Conn()
	conn.searchPath, err = c.store.queries.MigrationSearchPath(c.ctx, c.store.uncheckedDB(pc))
	if err == nil {
		err = c.store.queries.MigrationSetSearchPath(c.ctx, c.store.uncheckedDB(pc), c.store.sql.quotedSchema())
	}
	if err != nil {
		conn.discard.Store(true)
		return nil, errors.Join(err, conn.Close())
	}
	c.mu.Lock()
	c.current = conn
	c.mu.Unlock()
	return conn, nil
}

// Driver implements driver.Connector.
func (c *migrationConnector) Driver() driver.Driver { return c.inner.Driver() }

// acquire opens the session's connection and returns it for the store's
// own queries. golang-migrate's driver then gets the same one, and runs
// only between those queries, never at the same time.
func (c *migrationConnector) acquire(ctx context.Context, db *sql.DB) (*pgx.Conn, error) {
	if err := db.PingContext(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current == nil {
		return nil, errors.New("migration connection not opened")
	}
	return c.current.Conn.Conn(), nil
}

func (c *migrationConnector) currentConn() *migrationConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current
}

func (c *migrationConnector) discardCurrent() {
	if conn := c.currentConn(); conn != nil {
		conn.discard.Store(true)
	}
}

// watch makes ctx stop what the session's connection is doing: once ctx
// ends it sends the connection cancel requests (a statement that waits for
// a lock, advisory or not, fails with query_canceled and its transaction
// rolls back), and closes it when they go unanswered. The connection is
// then closed rather than returned to the pool. stop ends the watch.
func (c *migrationConnector) watch(ctx context.Context) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		ticker := time.NewTicker(cancelInterval)
		defer ticker.Stop()
		stopped := time.Now()
		for {
			if conn := c.currentConn(); conn != nil {
				conn.discard.Store(true)
				pgConn := conn.Conn.Conn().PgConn()
				if time.Since(stopped) > hardCloseAfter {
					_ = pgConn.Conn().Close()
				} else {
					cancelCtx, cancel := context.WithTimeout(context.Background(), cancelInterval)
					_ = pgConn.CancelRequest(cancelCtx)
					cancel()
				}
			}
			select {
			case <-done:
				return
			case <-ticker.C:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// migrationConn is a pool connection lent to golang-migrate.
type migrationConn struct {
	*stdlib.Conn
	store      *EventStore
	searchPath string // to restore
	discard    atomic.Bool
}

// Close restores the connection's search_path and releases it to the pool,
// or closes it first (the pool then drops it) when it was stopped, failed,
// or is in a transaction: no pool connection goes back with the migration's
// search_path, an advisory lock or an open transaction.
func (c *migrationConn) Close() error {
	pc := c.Conn.Conn()
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	restored := !c.discard.Load() && !pc.IsClosed() && pc.PgConn().TxStatus() == 'I' &&
		c.store.queries.MigrationSetSearchPath(ctx, c.store.uncheckedDB(pc), c.searchPath) == nil
	if !restored {
		_ = pc.Close(ctx)
	}
	return c.Conn.Close()
}

// isSchemaCreateRace reports the unique violation on the catalog that the
// loser of two concurrent CREATE SCHEMA IF NOT EXISTS gets.
func isSchemaCreateRace(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
