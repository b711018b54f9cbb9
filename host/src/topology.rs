//! RuntimeTopologyGraph: the per-cycle snapshot of repos, remotes, leases,
//! lanes and jobs and the edges between them.
