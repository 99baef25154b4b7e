package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// newTable returns a writer that aligns tab-separated columns; Flush it.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// relative says when t is from now's point of view: "3s ago", "in 12s",
// "now"; "-" for the zero time.
func relative(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d > -time.Second && d < time.Second:
		return "now"
	case d < 0:
		return "in " + shortDuration(-d)
	}
	return shortDuration(d) + " ago"
}

// shortDuration rounds d to its largest unit: 42s, 5m, 3h, 12d.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}

// count formats n with thousands separators: 1,204,000.
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + count(-n)
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// orDash is s, or "-" when empty, for table cells.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine shortens s to one line of at most n runes, for table cells.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// isTerminal reports whether w is a terminal, where progress is redrawn in
// place; elsewhere it is printed as lines.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// progress reports how far a long command is, on stderr: redrawn in place
// on a terminal, a line every interval elsewhere. It measures the rate
// over the last few seconds and derives the time left from it.
type progress struct {
	w        io.Writer
	label    string
	unit     string
	total    int64
	tty      bool
	interval time.Duration
	now      func() time.Time

	started time.Time
	printed time.Time
	samples []progressSample // the last few, for the rate
	drawn   bool
}

type progressSample struct {
	at   time.Time
	done int64
}

// progressWindow is how far back the rate looks.
const progressWindow = 5 * time.Second

func newProgress(w io.Writer, label, unit string, total int64, interval time.Duration) *progress {
	p := &progress{w: w, label: label, unit: unit, total: total, tty: isTerminal(w), interval: interval, now: time.Now}
	p.started = p.now()
	return p
}

// update records done and prints it if it is time to.
func (p *progress) update(done int64) {
	now := p.now()
	p.samples = append(p.samples, progressSample{at: now, done: done})
	for len(p.samples) > 2 && now.Sub(p.samples[1].at) >= progressWindow {
		p.samples = p.samples[1:]
	}
	every := p.interval
	if p.tty {
		every = min(every, 200*time.Millisecond)
	}
	if p.drawn && now.Sub(p.printed) < every {
		return
	}
	if !p.drawn && !p.tty && now.Sub(p.started) < every {
		return // a short run prints its final line only
	}
	p.print(done, false)
	p.printed, p.drawn = now, true
}

// rate is units a second over the window, 0 while unknown.
func (p *progress) rate() float64 {
	if len(p.samples) < 2 {
		return 0
	}
	first, last := p.samples[0], p.samples[len(p.samples)-1]
	elapsed := last.at.Sub(first.at).Seconds()
	if elapsed <= 0 {
		return 0
	}
	return math.Max(float64(last.done-first.done)/elapsed, 0)
}

// line is the progress as one line: label, bar, counts, rate and ETA; at
// the end the average rate and the time taken.
func (p *progress) line(done int64, final bool) string {
	var b strings.Builder
	b.WriteString(p.label)
	shown := min(done, p.total)
	if final {
		shown = p.total
	}
	if p.total > 0 {
		const width = 24
		filled := int(float64(width) * float64(shown) / float64(p.total))
		fmt.Fprintf(&b, " [%s%s] %3d%% %s/%s %s", strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
			100*shown/p.total, count(min(done, p.total)), count(p.total), p.unit)
	} else {
		fmt.Fprintf(&b, " %s %s", count(done), p.unit)
	}
	rate := p.rate()
	if final {
		if elapsed := p.elapsed().Seconds(); elapsed > 0 {
			rate = float64(done) / elapsed
		}
	}
	if rate > 0 {
		fmt.Fprintf(&b, ", %s %s/s", count(int64(math.Round(rate))), p.unit)
	} else {
		fmt.Fprintf(&b, ", - %s/s", p.unit)
	}
	switch {
	case final:
		fmt.Fprintf(&b, ", done in %s", p.elapsed().Round(time.Millisecond))
	case p.total == 0:
	case shown >= p.total:
		b.WriteString(", ETA 0s")
	case rate > 0:
		left := time.Duration(float64(p.total-shown) / rate * float64(time.Second))
		fmt.Fprintf(&b, ", ETA %s", roundETA(left))
	default:
		b.WriteString(", ETA -")
	}
	return b.String()
}

func (p *progress) print(done int64, final bool) {
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", p.line(done, final))
		if final {
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintln(p.w, p.line(done, final))
}

// finish prints the final state, done or not: interrupted, or failed.
func (p *progress) finish(done int64, completed bool) {
	p.samples = append(p.samples, progressSample{at: p.now(), done: done})
	p.print(done, completed)
}

// elapsed is the time since the progress started.
func (p *progress) elapsed() time.Duration { return p.now().Sub(p.started) }

// roundETA rounds d to what is worth reading: tenths of a second under
// 10s, seconds above.
func roundETA(d time.Duration) time.Duration {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}
