package dev.egressproxy.handler;

/**
 * User event fired on every client channel when the proxy starts draining: connections with no
 * exchange in flight close, an exchange in flight closes after its answer, tunnels run on until the
 * grace period ends.
 */
public final class DrainEvent {

    public static final DrainEvent INSTANCE = new DrainEvent();

    private DrainEvent() {
    }
}
