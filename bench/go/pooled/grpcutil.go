// Package grpcutil is the pooled variant of the book's: the same
// ServiceConnection, but one connection per target address, dialled on
// first use and reused by every later call (the callers must not close it).
package grpcutil

import (
	"context"
	"math/rand"
	"sync"

	"google.golang.org/grpc"
	"movieexample.com/pkg/discovery"
)

var (
	mutex       sync.Mutex
	connections = map[string]*grpc.ClientConn{}
)

// ServiceConnection selects a random service instance and returns the shared gRPC connection to it.
func ServiceConnection(ctx context.Context, serviceName string, registry discovery.Registry) (*grpc.ClientConn, error) {
	addrs, err := registry.ServiceAddresses(ctx, serviceName)
	if err != nil {
		return nil, err
	}
	addr := addrs[rand.Intn(len(addrs))]
	mutex.Lock()
	defer mutex.Unlock()
	if conn, ok := connections[addr]; ok {
		return conn, nil
	}
	conn, err := grpc.Dial(addr, grpc.WithInsecure())
	if err != nil {
		return nil, err
	}
	connections[addr] = conn
	return conn, nil
}
