package dev.egressproxy.check;

import java.util.List;

/**
 * What {@code check image} found: the steps of the pull, every host it touched and what the proxy
 * made of it, and the hosts a pull still needs ({@code "pull needs cdn02.quay.io:443, not in the
 * allowlist"}).
 */
record ImageResult(String image, String proxy, boolean pullWorks, List<String> needs, List<HostUse> hosts, List<Step> steps) {

    ImageResult {
        needs = List.copyOf(needs);
        hosts = List.copyOf(hosts);
        steps = List.copyOf(steps);
    }

    /** What the proxy did with the tunnels to one host. */
    enum ProxyVerdict {
        ADMITTED("admitted"), DENIED("denied"), UNREACHABLE("unreachable"), FAILED("failed");

        private final String label;

        ProxyVerdict(String label) {
            this.label = label;
        }

        String label() {
            return label;
        }
    }

    /**
     * One host of the pull.
     *
     * @param roles {@code registry}, {@code auth} (the token realm) and/or {@code blob} (a redirect target)
     * @param reasonCode the proxy's {@code X-Egress-Proxy-Reason} when it refused or could not connect
     * @param statuses the distinct statuses the host answered
     * @param detail the proxy's reason phrase, or the TLS or transport failure
     */
    record HostUse(String authority, List<String> roles, ProxyVerdict proxy, String reasonCode, List<Integer> statuses,
            int requests, String detail) {
    }

    /** One step: the ping, the token, a manifest, a blob. */
    record Step(String what, boolean ok, String detail) {
    }
}
