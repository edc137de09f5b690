package dev.egressproxy.policy;

/** The two ways a client asks the proxy for a destination. */
public enum Kind {
    /** {@code CONNECT host:port}: a byte tunnel, usually carrying TLS. Default port 443. */
    CONNECT("connect", 443),
    /** An absolute-form request such as {@code GET http://host/path}. Default port 80. */
    HTTP("http", 80);

    private final String label;
    private final int defaultPort;

    Kind(String label, int defaultPort) {
        this.label = label;
        this.defaultPort = defaultPort;
    }

    /** Stable lower-case name used as a metric label and in logs. */
    public String label() {
        return label;
    }

    /** The port an allowlist entry without a port stands for. */
    public int defaultPort() {
        return defaultPort;
    }
}
