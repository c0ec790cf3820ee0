"""Search: the Searcher (query encoding + scoring kernels), offline evaluation and the HTTP API."""
