package controlplane

import dto "github.com/prometheus/client_model/go"

// dtoMetric reads a counter's value in tests and benchmarks.
type dtoMetric struct{ m dto.Metric }

func (d *dtoMetric) ptr() *dto.Metric { return &d.m }
func (d *dtoMetric) value() float64   { return d.m.GetCounter().GetValue() }
