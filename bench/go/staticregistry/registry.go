// Package staticregistry is a discovery.Registry of fixed addresses: what
// the comparison gives the book's gateways in place of Consul.
package staticregistry

import (
	"context"

	"movieexample.com/pkg/discovery"
)

// Registry answers the addresses it was built with; registrations are ignored.
type Registry struct {
	addresses map[string][]string
}

// New builds a registry from service names to their addresses.
func New(addresses map[string][]string) *Registry {
	return &Registry{addresses: addresses}
}

// Register does nothing: the addresses are fixed.
func (r *Registry) Register(context.Context, string, string, string) error { return nil }

// Deregister does nothing: the addresses are fixed.
func (r *Registry) Deregister(context.Context, string, string) error { return nil }

// ReportHealthyState does nothing: the addresses are fixed.
func (r *Registry) ReportHealthyState(string, string) error { return nil }

// ServiceAddresses returns the fixed addresses of a service.
func (r *Registry) ServiceAddresses(_ context.Context, serviceName string) ([]string, error) {
	addresses := r.addresses[serviceName]
	if len(addresses) == 0 {
		return nil, discovery.ErrNotFound
	}
	return addresses, nil
}
