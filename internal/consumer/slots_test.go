package consumer

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSlotPool(t *testing.T) {
	t.Run("takes a full batch when it is free", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newSlotPool(20)
			n, ok := s.acquire(context.Background(), time.Second)
			require.True(t, ok)
			require.Equal(t, 10, n)
			require.Equal(t, 10, s.available())
		})
	})
	t.Run("waits for the rest, woken once when they are free", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newSlotPool(10)
			n, _ := s.acquire(context.Background(), time.Second)
			require.Equal(t, 10, n)
			got := make(chan int, 1)
			go func() { n, _ := s.acquire(context.Background(), time.Hour); got <- n }()
			synctest.Wait()
			for range 10 {
				s.release(1)
			}
			require.Equal(t, 10, <-got, "all ten, not the first one freed")
			require.Zero(t, s.available())
		})
	})
	t.Run("after the window, takes what is free", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newSlotPool(10)
			s.acquire(context.Background(), time.Second)
			got := make(chan int, 1)
			go func() { n, _ := s.acquire(context.Background(), 25*time.Millisecond); got <- n }()
			synctest.Wait()
			s.release(3)
			start := time.Now()
			require.Equal(t, 3, <-got)
			require.Equal(t, 25*time.Millisecond, time.Since(start), "the window runs from the first free slot")
		})
	})
	t.Run("a cancelled wait gives its slots back", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newSlotPool(10)
			s.acquire(context.Background(), time.Second)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan bool, 1)
			go func() { _, ok := s.acquire(ctx, time.Hour); done <- ok }()
			synctest.Wait()
			cancel()
			require.False(t, <-done)
			s.release(10)
			require.Equal(t, 10, s.available(), "no slot lost to the cancelled waiter")
		})
	})
	t.Run("waiters are served in order", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newSlotPool(10)
			s.acquire(context.Background(), time.Second)
			order := make(chan int, 2)
			for i := range 2 {
				go func() { s.acquire(context.Background(), time.Hour); order <- i }()
				synctest.Wait()
			}
			s.release(10)
			require.Equal(t, 0, <-order)
			s.release(10)
			require.Equal(t, 1, <-order)
		})
	})
	t.Run("grows and shrinks while slots are held", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newSlotPool(4)
			n, _ := s.acquire(context.Background(), time.Second)
			require.Equal(t, 4, n)
			got := make(chan int, 1)
			go func() { n, _ := s.acquire(context.Background(), time.Hour); got <- n }()
			synctest.Wait()
			s.resize(4)
			require.Equal(t, 4, <-got, "a waiter is served by the slots a resize adds")
			s.resize(-4)
			require.Equal(t, -4, s.available(), "held slots are not taken back")
			s.release(8)
			require.Equal(t, 4, s.available())
		})
	})
}
