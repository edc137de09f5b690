package dev.egressproxy.check;

/**
 * An image reference as podman and skopeo read it: {@code [registry[:port]/]repository[:tag|@digest]}.
 * A first component without a dot or colon (and not {@code localhost}) is part of the repository on
 * Docker Hub, whose API host is {@code registry-1.docker.io} and whose one-word names live under
 * {@code library/}.
 */
record ImageRef(String registry, String repository, String reference) {

    static ImageRef parse(String text) {
        String s = text.trim();
        if (s.startsWith("docker://")) {
            s = s.substring("docker://".length());
        }
        if (s.isEmpty() || s.contains("://") || s.contains(" ")) {
            throw new IllegalArgumentException("'" + text + "' is not an image reference such as registry.redhat.io/ubi9/ubi-minimal:latest");
        }
        String registry = "registry-1.docker.io";
        int slash = s.indexOf('/');
        if (slash > 0) {
            String first = s.substring(0, slash);
            if (first.contains(".") || first.contains(":") || first.equals("localhost")) {
                registry = first.equals("docker.io") || first.equals("index.docker.io") ? "registry-1.docker.io" : first;
                s = s.substring(slash + 1);
            }
        }
        String reference;
        int at = s.indexOf('@');
        if (at >= 0) {
            reference = s.substring(at + 1);
            s = s.substring(0, at);
            if (!reference.matches("[a-z0-9]+:[a-f0-9]{32,}")) {
                throw new IllegalArgumentException("'" + text + "': '" + reference + "' is not a digest such as sha256:<hex>");
            }
        } else {
            int colon = s.lastIndexOf(':');
            if (colon > s.lastIndexOf('/')) {
                reference = s.substring(colon + 1);
                s = s.substring(0, colon);
            } else {
                reference = "latest";
            }
        }
        if (!s.matches("[a-z0-9]+([._/-][a-z0-9]+|__[a-z0-9]+)*")) {
            throw new IllegalArgumentException("'" + text + "': '" + s + "' is not a repository name (lower case, digits, . _ - /)");
        }
        if (registry.equals("registry-1.docker.io") && !s.contains("/")) {
            s = "library/" + s;
        }
        return new ImageRef(registry, s, reference);
    }

    /** The registry as {@code host:port}, 443 unless it names a port. */
    String registryAuthority() {
        return registry.contains(":") ? registry : registry + ":443";
    }

    @Override
    public String toString() {
        return registry + "/" + repository + (reference.contains(":") ? "@" : ":") + reference;
    }
}
