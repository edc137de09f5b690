package dev.egressproxy.handler;

/**
 * User event fired on the client channel when a forwarded exchange has ended and the connection
 * stays open for the next request: the request-head timer starts again.
 */
public final class ExchangeDone {

    public static final ExchangeDone INSTANCE = new ExchangeDone();

    private ExchangeDone() {
    }
}
