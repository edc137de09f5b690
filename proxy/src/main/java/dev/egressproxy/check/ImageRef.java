package dev.egressproxy.check;

import java.util.Locale;
import java.util.regex.Pattern;

/**
 * An image reference as podman and skopeo read it: {@code [registry[:port]/]repository[:tag][@digest]}.
 * A first component without a dot or colon (and not {@code localhost}) is part of the repository on
 * Docker Hub, whose API host is {@code registry-1.docker.io} and whose one-word names live under
 * {@code library/}. With both a tag and a digest the digest is pulled and the tag ignored, as
 * podman does.
 */
record ImageRef(String registry, String repository, String reference) {

    private static final String DOCKER_HUB = "registry-1.docker.io";
    // distribution/reference: components of lower case and digits, separated by one . or _, two _, or any number of -.
    private static final Pattern REPOSITORY = Pattern.compile("[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*");
    private static final Pattern TAG = Pattern.compile("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
    private static final Pattern DIGEST = Pattern.compile("[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}");
    private static final Pattern HOST = Pattern.compile("(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
            + "(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\\[[0-9A-Fa-f:.]+\\])(?::(\\d{1,5}))?");

    static ImageRef parse(String text) {
        String s = text.trim();
        if (s.startsWith("docker://")) {
            s = s.substring("docker://".length());
        }
        if (s.isEmpty() || s.contains("://") || s.chars().anyMatch(Character::isWhitespace)) {
            throw new IllegalArgumentException("'" + text + "' is not an image reference such as registry.redhat.io/ubi9/ubi-minimal:latest");
        }
        String registry = DOCKER_HUB;
        int slash = s.indexOf('/');
        if (slash >= 0) {
            String first = s.substring(0, slash);
            if (first.contains(".") || first.contains(":") || first.equals("localhost")) {
                var m = HOST.matcher(first);
                if (!m.matches() || (m.group(1) != null && (Integer.parseInt(m.group(1)) < 1 || Integer.parseInt(m.group(1)) > 65535))) {
                    throw new IllegalArgumentException("'" + text + "': '" + first + "' is not a registry host[:port]");
                }
                first = first.toLowerCase(Locale.ROOT);
                registry = first.equals("docker.io") || first.equals("index.docker.io") ? DOCKER_HUB : first;
                s = s.substring(slash + 1);
            }
        }
        String reference = null;
        int at = s.indexOf('@');
        if (at >= 0) {
            reference = s.substring(at + 1);
            s = s.substring(0, at);
            if (!DIGEST.matcher(reference).matches() || (reference.startsWith("sha256:") && reference.length() != 7 + 64)) {
                throw new IllegalArgumentException("'" + text + "': '" + reference + "' is not a digest such as sha256:<64 hex digits>");
            }
        }
        int colon = s.lastIndexOf(':');
        if (colon > s.lastIndexOf('/')) {
            String tag = s.substring(colon + 1);
            if (!TAG.matcher(tag).matches()) {
                throw new IllegalArgumentException("'" + text + "': '" + tag + "' is not a tag (letters, digits, _ . -, at most 128)");
            }
            s = s.substring(0, colon);
            // With a digest too, the digest names the image; the tag is only a label.
            reference = reference == null ? tag : reference;
        }
        if (reference == null) {
            reference = "latest";
        }
        if (!REPOSITORY.matcher(s).matches()) {
            throw new IllegalArgumentException("'" + text + "': '" + s + "' is not a repository name (lower case, digits, . _ - /)");
        }
        if (registry.equals(DOCKER_HUB) && !s.contains("/")) {
            s = "library/" + s;
        }
        return new ImageRef(registry, s, reference);
    }

    /** The registry as {@code host:port}, 443 unless it names a port. */
    String registryAuthority() {
        return registry.lastIndexOf(':') > registry.lastIndexOf(']') ? registry : registry + ":443";
    }

    /** Whether {@link #reference()} is a digest rather than a tag. */
    boolean byDigest() {
        return reference.contains(":");
    }

    @Override
    public String toString() {
        return registry + "/" + repository + (byDigest() ? "@" : ":") + reference;
    }
}
