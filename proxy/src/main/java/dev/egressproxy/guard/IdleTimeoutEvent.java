package dev.egressproxy.guard;

/**
 * User event fired through a client connection's pipeline by {@link IdleCloseHandler} right before
 * it closes the connection as idle, so that whoever records how the connection ended (a tunnel's
 * access-log {@code end=idle_timeout}) knows why the close comes.
 */
public final class IdleTimeoutEvent {

    public static final IdleTimeoutEvent INSTANCE = new IdleTimeoutEvent();

    private IdleTimeoutEvent() {
    }
}
