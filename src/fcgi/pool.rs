//! Backend choice: round-robin or least-connections, skipping backends that failed recently,
//! and never a backend this request already failed on (failover).

use super::config::Balance;

/// What the chooser needs to know of a backend.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BackendView {
    /// Requests assigned to it now.
    pub active: usize,
    /// A connect to it failed recently.
    pub down: bool,
}

/// Backends in the order to try them for one request: not yet tried by this request first
/// (healthy before recently failed), in round-robin order from `cursor`, or by fewest active
/// requests (ties in round-robin order). Backends in `tried` are left out unless all were tried.
pub(crate) fn order(views: &[BackendView], balance: Balance, cursor: usize, tried: &[usize]) -> Vec<usize> {
    let n = views.len();
    if n == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..n).map(|i| (cursor + i) % n).collect();
    if tried.len() < n && order.iter().any(|b| !tried.contains(b)) {
        order.retain(|b| !tried.contains(b));
    }
    if balance == Balance::LeastConnections {
        order.sort_by_key(|&b| views[b].active); // stable: ties keep round-robin order
    }
    order.sort_by_key(|&b| views[b].down); // stable: healthy first
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(active: usize, down: bool) -> BackendView {
        BackendView { active, down }
    }

    #[test]
    fn round_robin_from_cursor() {
        let views = [v(0, false), v(5, false), v(1, false)];
        assert_eq!(order(&views, Balance::RoundRobin, 0, &[]), vec![0, 1, 2]);
        assert_eq!(order(&views, Balance::RoundRobin, 2, &[]), vec![2, 0, 1]);
        assert_eq!(order(&views, Balance::RoundRobin, 4, &[]), vec![1, 2, 0]);
    }

    #[test]
    fn least_connections() {
        let views = [v(3, false), v(1, false), v(1, false), v(0, false)];
        assert_eq!(order(&views, Balance::LeastConnections, 0, &[]), vec![3, 1, 2, 0]);
        assert_eq!(order(&views, Balance::LeastConnections, 2, &[]), vec![3, 2, 1, 0]);
    }

    #[test]
    fn failover_skips_tried_and_down_last() {
        let views = [v(0, true), v(0, false), v(0, false)];
        assert_eq!(order(&views, Balance::RoundRobin, 0, &[]), vec![1, 2, 0]);
        assert_eq!(order(&views, Balance::RoundRobin, 0, &[1]), vec![2, 0]);
        // All tried: everything is a candidate again.
        assert_eq!(order(&views, Balance::RoundRobin, 0, &[0, 1, 2]), vec![1, 2, 0]);
        assert_eq!(order(&[], Balance::RoundRobin, 0, &[]), Vec::<usize>::new());
    }
}
