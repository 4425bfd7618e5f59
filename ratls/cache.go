package ratls

import (
	"container/list"
	"sync"
	"time"
)

// evidenceCache is a bounded LRU of verification results keyed by SHA-256
// of the leaf certificate's DER. A nil cache stores nothing.
type evidenceCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *cacheItem, most recent first
	items map[[32]byte]*list.Element
}

type cacheItem struct {
	key [32]byte
	ent *verified
}

func newEvidenceCache(max int) *evidenceCache {
	return &evidenceCache{max: max, order: list.New(), items: make(map[[32]byte]*list.Element)}
}

// get returns the entry for key if it has not expired at now. The entry is
// shared and must not be modified.
func (c *evidenceCache) get(key [32]byte, now time.Time) *verified {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok {
		return nil
	}
	it := e.Value.(*cacheItem)
	if !now.Before(it.ent.expires) {
		c.order.Remove(e)
		delete(c.items, key)
		return nil
	}
	c.order.MoveToFront(e)
	return it.ent
}

func (c *evidenceCache) put(key [32]byte, ent *verified) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		e.Value.(*cacheItem).ent = ent
		c.order.MoveToFront(e)
		return
	}
	c.items[key] = c.order.PushFront(&cacheItem{key: key, ent: ent})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*cacheItem).key)
	}
}

func (c *evidenceCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
