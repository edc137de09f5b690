package dev.egressproxy.policy;

/**
 * A destination authority or URI that the proxy refuses to interpret. The message is safe to send
 * to the client: it never contains the raw input, only a description of what is wrong.
 */
public final class MalformedTargetException extends Exception {
    private static final long serialVersionUID = 1L;

    public MalformedTargetException(String message) {
        super(message, null, false, false);
    }
}
