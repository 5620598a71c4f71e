"""The network-namespace lab that the demo, the tests, the interop harness and the benchmarks
share: namespaces, veth pairs, processes started inside them, checked transfers."""
