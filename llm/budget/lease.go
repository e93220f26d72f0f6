package budget

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/toolgate/toolgate/store"
)

// Leases take the store off the request path. With Config.LeaseFor set, the Manager does
// not reserve each call in the store: it reserves a larger amount once (a lease, held in
// the store as one ordinary reservation, so every replica sees it), admits calls against it
// in memory, and settles the lease with the calls' summed spend when it closes. Every
// admission is still covered by budget held in the store, so no replica can admit past a
// max budget; what changes is when spend shows in the store (when the lease settles: once
// it is LeaseFor old or full and its last call has ended, or on FlushBudgets) and that a
// replica that dies loses its open leases' spend (their reservation is released by the
// sweeper after ReservationTTL).
//
// A lease never pins the rest of a budget: it takes at most 1/leaseShare of the headroom
// its tightest budget has left, and at most a number of calls' worth that starts at
// firstLeaseCalls for a chain and doubles, up to maxLeaseCalls, while the chain's leases
// are used (so that a chain seen once, such as a new end user, pins little). Near the limit, when
// a lease would not hold two calls, calls are reserved one by one as without leases, and a
// refused call closes this replica's leases on its budgets, waits for them to give their
// unused part back and tries again, until none holds anything, so one replica admits
// exactly what fits.

// leaseShare is the largest fraction (1/leaseShare) of a budget's headroom one lease takes.
const leaseShare = 8

// A chain's first lease holds firstLeaseCalls calls of the size that asked for it; each
// next one holds twice as many calls as the previous lease admitted, between
// firstLeaseCalls and maxLeaseCalls.
const (
	firstLeaseCalls = 8
	maxLeaseCalls   = 512
)

// lease is budget held in the store for one chain of refs, shared by calls in memory.
type lease struct {
	id      string // the store reservation holding size
	key     string // refsKey(refs)
	refs    []store.BudgetRef
	size    float64 // +Inf when no budget of refs has a max budget: nothing is held then
	holding float64 // amounts of admitted calls that have not settled
	spent   float64 // actual spend of calls that have settled
	calls   int     // admitted calls that have not settled
	taken   int     // calls admitted in all
	closed  bool    // takes no more calls; settles when calls reaches 0
	settled chan struct{}
}

func (l *lease) room() float64 { return l.size - l.holding - l.spent }

// held reports whether the lease holds budget in the store.
func (l *lease) held() bool { return !math.IsInf(l.size, 1) }

// reserveLeased admits r against its chain's open lease, taking a new lease when the open
// one has no room, or reserves r alone when a lease is not worth it.
func (m *Manager) reserveLeased(ctx context.Context, r *Reservation, key string) (*Reservation, error) {
	for {
		m.lmu.Lock()
		if l := m.open[key]; l != nil {
			if l.room() >= r.Amount-epsilon {
				m.admitLocked(l, r)
				m.lmu.Unlock()
				return r, nil
			}
			m.closeLocked(l)
		}
		if wait, ok := m.taking[key]; ok {
			// Another call is taking this chain's lease: use it rather than take a second.
			m.lmu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		m.taking[key] = done
		calls := m.nextCalls[key]
		m.lmu.Unlock()

		l, err := m.takeLease(ctx, key, r.Refs, r.Amount, max(calls, firstLeaseCalls))

		m.lmu.Lock()
		delete(m.taking, key)
		close(done)
		if l != nil {
			m.open[key] = l
			m.all[l] = struct{}{}
			m.admitLocked(l, r)
			m.lmu.Unlock()
			time.AfterFunc(m.cfg.LeaseFor, func() { m.expire(l) })
			return r, nil
		}
		m.lmu.Unlock()
		if err == nil {
			err = m.reserveAlone(ctx, r)
		}
		if err != nil {
			return nil, err
		}
		return r, nil
	}
}

// epsilon absorbs float noise when comparing amounts.
const epsilon = 1e-9

func (m *Manager) admitLocked(l *lease, r *Reservation) {
	l.holding += r.Amount
	l.calls++
	l.taken++
	r.lease, r.Held = l, true
}

// takeLease reserves a lease for refs sized for calls calls of amount, or returns nil, nil
// when the headroom left is too small for a lease to hold two such calls.
func (m *Manager) takeLease(ctx context.Context, key string, refs []store.BudgetRef, amount float64, calls int) (*lease, error) {
	bs, err := m.st.Budgets(ctx, refs)
	if err != nil {
		return nil, fmt.Errorf("read budgets: %w", err)
	}
	l := &lease{id: NewID(), key: key, refs: refs, size: math.Inf(1), settled: make(chan struct{})}
	if !anyLimit(bs) {
		// Nothing can be refused, so nothing is held: the lease only sums spend. A max
		// budget set meanwhile applies from the next lease on.
		return l, nil
	}
	l.size = amount * float64(calls)
	for _, b := range bs {
		if b.MaxBudget != nil {
			l.size = min(l.size, (*b.MaxBudget-b.Spend-b.Reserved)/leaseShare)
		}
	}
	if l.size < 2*amount {
		return nil, nil
	}
	err = m.st.Reserve(ctx, l.id, refs, l.size, m.now().Add(m.cfg.ReservationTTL))
	var be *store.BudgetExceededError
	if errors.As(err, &be) {
		return nil, nil // spent or leased elsewhere since the read: reserve alone
	}
	if err != nil {
		return nil, fmt.Errorf("reserve budget lease: %w", err)
	}
	return l, nil
}

// reserveAlone reserves r by itself in the store. When leases are on and the store refuses,
// it closes this replica's leases on any of r's budgets, waits for them to settle and give
// their unused part back, and tries again, until it is admitted or no such lease holds
// anything (for at most LeaseFor): a lease other calls opened meanwhile is closed in turn.
// So a call is refused only when this replica's leases hold nothing it could have had.
func (m *Manager) reserveAlone(ctx context.Context, r *Reservation) error {
	err := m.storeReserve(ctx, r)
	var ee *ExceededError
	if m.cfg.LeaseFor <= 0 || !errors.As(err, &ee) {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, m.cfg.LeaseFor)
	defer cancel()
	for {
		var held []*lease
		for _, l := range m.closeSharing(r.Refs) {
			if l.held() { // a lease that holds nothing cannot make room
				held = append(held, l)
			}
		}
		if len(held) == 0 || waitSettled(wctx, held) != nil {
			return err
		}
		if err = m.storeReserve(ctx, r); !errors.As(err, &ee) {
			return err
		}
	}
}

// waitSettled waits until every lease in leases has settled, or ctx ends.
func waitSettled(ctx context.Context, leases []*lease) error {
	for _, l := range leases {
		select {
		case <-l.settled:
		case <-ctx.Done():
			return fmt.Errorf("flush budget leases: %w", ctx.Err())
		}
	}
	return nil
}

// closeSharing closes the open leases that hold any of refs and returns every lease on
// those budgets that has not settled yet.
func (m *Manager) closeSharing(refs []store.BudgetRef) []*lease {
	m.lmu.Lock()
	defer m.lmu.Unlock()
	var out []*lease
	for l := range m.all {
		if !shares(l.refs, refs) {
			continue
		}
		if m.open[l.key] == l {
			m.closeLocked(l)
		}
		out = append(out, l)
	}
	return out
}

func shares(a, b []store.BudgetRef) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// storeReserve holds r.Amount on r.Refs in the store.
func (m *Manager) storeReserve(ctx context.Context, r *Reservation) error {
	r.Held = true
	err := m.st.Reserve(ctx, r.ID, r.Refs, r.Amount, m.now().Add(m.cfg.ReservationTTL))
	var be *store.BudgetExceededError
	if errors.As(err, &be) {
		ee := &ExceededError{Scope: be.Scope, ID: be.ID, MaxBudget: be.MaxBudget, Spend: be.Spend, Reserved: be.Reserved}
		if m.cfg.OnExceeded != nil {
			m.cfg.OnExceeded(ee)
		}
		return ee
	}
	if err != nil {
		return fmt.Errorf("reserve budget: %w", err)
	}
	return nil
}

// commitLeased settles a call admitted against a lease: in memory, and in the store once
// the lease has closed and its last call has settled.
func (m *Manager) commitLeased(r *Reservation, actual float64) {
	l := r.lease
	m.lmu.Lock()
	l.holding -= r.Amount
	l.spent += actual
	l.calls--
	settle := l.closed && l.calls == 0
	m.lmu.Unlock()
	if settle {
		m.settleLater(l)
	}
}

// expire closes l when its time is up, if it is still the open lease of its chain.
func (m *Manager) expire(l *lease) {
	m.lmu.Lock()
	if m.open[l.key] == l {
		m.closeLocked(l)
	}
	m.lmu.Unlock()
}

// closeLocked stops l taking calls and, if none is running, settles it.
func (m *Manager) closeLocked(l *lease) {
	if l.closed {
		return
	}
	l.closed = true
	if m.open[l.key] == l {
		delete(m.open, l.key)
	}
	if len(m.nextCalls) >= maxLimited {
		clear(m.nextCalls) // many distinct chains (end users, tags): start over
	}
	m.nextCalls[l.key] = min(2*l.taken, maxLeaseCalls)
	if l.calls == 0 {
		m.settleLater(l)
	}
}

// settleLater settles l in the store in the background. Flush and Close wait for it.
func (m *Manager) settleLater(l *lease) {
	m.settling.Add(1)
	go func() {
		defer m.settling.Done()
		m.settle(l)
	}()
}

// settle charges l's spend and releases its reservation, retrying a failing store for up
// to a minute (after that the sweeper releases the reservation and the spend is lost,
// which is logged).
func (m *Manager) settle(l *lease) {
	ctx := context.Background()
	var err error
	if l.held() || l.spent > 0 { // else there is nothing to write
		for wait := 50 * time.Millisecond; ; wait *= 2 {
			if err = m.st.Settle(ctx, l.id, l.refs, l.spent); err == nil || wait > 30*time.Second {
				break
			}
			time.Sleep(wait)
		}
	}
	if err != nil {
		m.log.Error("settle budget lease: spend not recorded", "spend", l.spent, "err", err)
	}
	m.lmu.Lock()
	delete(m.all, l)
	m.lmu.Unlock()
	close(l.settled)
	if err == nil && l.spent > 0 && m.cfg.AlertURL != "" {
		m.checkSoft(ctx, l.refs)
	}
}

// Flush closes every open lease and waits until every lease has settled in the store, or
// ctx ends. Leases with calls still running settle when their last call does. Without
// Config.LeaseFor it does nothing.
func (m *Manager) Flush(ctx context.Context) error {
	m.lmu.Lock()
	pending := make([]*lease, 0, len(m.all))
	for l := range m.all {
		m.closeLocked(l)
		pending = append(pending, l)
	}
	m.lmu.Unlock()
	return waitSettled(ctx, pending)
}

// FlushBudgets closes this replica's leases on any of refs and waits, until ctx ends, for
// them to settle, so that a read of those budgets that follows sees the spend of every call
// this replica has finished on them. It reports whether there was any such lease. Calls
// still running on a closed lease delay its settlement until they end.
func (m *Manager) FlushBudgets(ctx context.Context, refs []store.BudgetRef) (bool, error) {
	pending := m.closeSharing(refs)
	return len(pending) > 0, waitSettled(ctx, pending)
}
