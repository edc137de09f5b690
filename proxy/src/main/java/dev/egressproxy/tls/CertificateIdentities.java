package dev.egressproxy.tls;

import java.security.cert.CertificateParsingException;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import javax.naming.InvalidNameException;
import javax.naming.ldap.LdapName;
import javax.naming.ldap.Rdn;
import javax.security.auth.x500.X500Principal;

/**
 * The identities a verified client certificate proves, as policies and the access log name them:
 * {@code CN=<common name>} of the subject (its most specific CN), every URI SAN as written
 * ({@code spiffe://example.org/ns/build/sa/builder}) and every DNS SAN as {@code DNS:<name>}, in
 * that order. Other SAN types (IP, e-mail) are not identities here.
 */
public final class CertificateIdentities {

    private static final int SAN_DNS = 2;
    private static final int SAN_URI = 6;

    private CertificateIdentities() {
    }

    public static List<String> of(X509Certificate certificate) {
        List<String> identities = new ArrayList<>();
        String cn = commonName(certificate.getSubjectX500Principal());
        if (cn != null) {
            identities.add("CN=" + cn);
        }
        Collection<List<?>> sans;
        try {
            sans = certificate.getSubjectAlternativeNames();
        } catch (CertificateParsingException e) {
            sans = null;
        }
        if (sans != null) {
            for (List<?> san : sans) {
                if (san.size() >= 2 && san.get(0) instanceof Integer type && san.get(1) instanceof String value) {
                    if (type == SAN_URI) {
                        identities.add(value);
                    }
                }
            }
            for (List<?> san : sans) {
                if (san.size() >= 2 && san.get(0) instanceof Integer type && san.get(1) instanceof String value) {
                    if (type == SAN_DNS) {
                        identities.add("DNS:" + value);
                    }
                }
            }
        }
        return List.copyOf(identities);
    }

    /** The most specific CN of {@code subject}, or null when it has none. */
    static String commonName(X500Principal subject) {
        try {
            LdapName name = new LdapName(subject.getName(X500Principal.RFC2253));
            // LdapName lists RDNs from the least specific (index 0) to the most specific.
            List<Rdn> rdns = name.getRdns();
            for (int i = rdns.size() - 1; i >= 0; i--) {
                Rdn rdn = rdns.get(i);
                if (rdn.getType().equalsIgnoreCase("CN")) {
                    return String.valueOf(rdn.getValue());
                }
            }
        } catch (InvalidNameException e) {
            return null;
        }
        return null;
    }
}
