package dev.egressproxy.handler;

/**
 * User event fired on every client channel right before the proxy closes it as it stops (after the
 * drain's grace, or without a drain), so that a tunnel cut by the shutdown records
 * {@code end=proxy_closed} rather than the close it sees next.
 */
public final class ProxyClosingEvent {

    public static final ProxyClosingEvent INSTANCE = new ProxyClosingEvent();

    private ProxyClosingEvent() {
    }
}
