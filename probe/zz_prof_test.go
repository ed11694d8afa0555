package probe

import (
	"context"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector"
)

func TestZZProf(t *testing.T) {
	st, err := collector.NewTimestamper()
	if err != nil {
		t.Skip(err)
	}
	defer st.Close()
	st2, _ := collector.NewTimestamper()
	defer st2.Close()
	_, addr := startAgent(t, ServerConfig{Stamper: st})
	c, err := Dial(context.Background(), addr, ClientConfig{Stamper: st2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	res, err := c.Echo(context.Background(), EchoParams{Count: 200000, Size: 64}, EchoOptions{Wait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d in %v", len(res.Records), time.Since(start))
}
