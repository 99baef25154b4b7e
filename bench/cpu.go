package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// cpuMeter measures the CPU time this process uses and, when PostgreSQL
// runs on this machine, the CPU time of the backends serving the harness's
// connections (the sequencer's included). Per event, CPU time is far less
// sensitive than throughput to whatever else the machine is doing.
type cpuMeter struct {
	mu   sync.Mutex
	pids []uint32
}

// cpuSnapshot is the CPU time used so far.
type cpuSnapshot struct {
	process time.Duration
	server  map[uint32]time.Duration // by backend PID; nil when not measurable
}

// afterConnect records a new connection's backend; it is a pgxpool
// AfterConnect hook.
func (m *cpuMeter) afterConnect(_ context.Context, conn *pgx.Conn) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pids = append(m.pids, conn.PgConn().PID())
	return nil
}

func (m *cpuMeter) snapshot() cpuSnapshot {
	s := cpuSnapshot{process: processCPU(), server: map[uint32]time.Duration{}}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, pid := range m.pids {
		used, err := backendCPU(pid)
		if err != nil {
			// Not a local postgres process: the server is elsewhere, or
			// the backend has exited and its PID may be reused.
			if !os.IsNotExist(err) {
				return cpuSnapshot{process: s.process}
			}
			continue
		}
		s.server[pid] = used
	}
	return s
}

// since returns the CPU time used since start: by this process, and by the
// server (-1 when not measurable).
func (s cpuSnapshot) since(start cpuSnapshot) (process, server time.Duration) {
	process = s.process - start.process
	if s.server == nil || start.server == nil {
		return process, -1
	}
	for pid, used := range s.server {
		server += used - start.server[pid] // a new backend started from 0
	}
	return process, server
}

func processCPU() time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// backendCPU returns the user plus system CPU time of a local PostgreSQL
// backend, from /proc (Linux only).
func backendCPU(pid uint32) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may contain spaces: parse after it.
	s := string(stat)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	if comm := s[open+1 : end]; !strings.HasPrefix(comm, "postgres") {
		return 0, fmt.Errorf("process %d is %q, not a PostgreSQL backend", pid, comm)
	}
	fields := strings.Fields(s[end+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	// Fields 14 and 15 of the file (utime, stime) are 12 and 13 after the
	// command name.
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
