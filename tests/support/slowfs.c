/* slowfs: the test suite's and the benchmark's stand-in for a site's
 * network home or scratch. A FUSE passthrough to a backing directory that
 *
 * - waits SLOWFS_US microseconds on every metadata request (lookups, opens,
 *   closes, creates, renames, directory reads, xattrs...), never on reads and
 *   writes of data, as a Lustre, GPFS or NFS client pays a round trip to the
 *   server for each; the daemon serves requests on several threads
 *   (SLOWFS_THREADS, libfuse's default 10), so concurrent requests overlap
 *   their waits as they do on a real server;
 * - lets the kernel cache attributes and names for SLOWFS_CACHE_S seconds
 *   (default 1), as NFS's attribute cache does;
 * - enforces a quota, SLOWFS_QUOTA_KB of allocated blocks and
 *   SLOWFS_QUOTA_FILES inodes over the whole mount (hard links count once),
 *   failing with EDQUOT the write or the new inode that would pass it, while
 *   statfs still answers for the backing filesystem: an NFS, GPFS or Lustre
 *   home's statvfs shows the server's free space, not the user's quota;
 * - with SLOWFS_RENAME_FLAGS=0, refuses renameat2's flags (RENAME_NOREPLACE,
 *   RENAME_EXCHANGE) with EINVAL, as NFS and many network filesystems do;
 * - with SLOWFS_FLOCK=ENOLCK (or ENOSYS, EOPNOTSUPP, EINVAL), refuses every
 *   flock with that error, as an NFS home whose lock manager cannot be
 *   reached (ENOLCK), Lustre mounted noflock (ENOSYS) or some FUSE and CIFS
 *   mounts do; with SLOWFS_FLOCK_AFTER=N too, grants the first N locks (on
 *   the backing file) and refuses those after, as a lock manager lost
 *   midway; unset, the kernel keeps flock locks itself, on this node.
 *
 * Usage: SLOWFS_US=500 slowfs BACKING MOUNTPOINT [-f] [-o fuse-option]
 * Build: cc -O2 -Wall slowfs.c $(pkg-config fuse3 --cflags --libs) -o slowfs
 * (Debian: fuse3 and libfuse3-dev). Run as root, the mount is shared with
 * every user (allow_other) and the kernel checks permissions
 * (default_permissions); what a user creates is theirs.
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <fuse.h>
#include <limits.h>
#include <pthread.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

static int root_fd;
static char root_path[PATH_MAX];
static long round_trip_us;
static double cache_s = 1.0;
static int rename_flags = 1;
static int flock_refusal;      /* the errno a refused flock gets; 0: not served here */
static long long flock_after;  /* locks granted before the refusals start */
static long long flock_asked;

/* The quota's ledger; a limit of 0 is no limit. Writes and the operations
 * that free space take the lock, so a charge and the change it stands for
 * are one step for every other thread. */
static struct {
    pthread_mutex_t lock;
    long long byte_limit, file_limit, bytes, files;
    int on;
} quota = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void *counted_links; /* inodes with several names, counted once */

static void round_trip(void) {
    struct timespec wait = {round_trip_us / 1000000, (round_trip_us % 1000000) * 1000};
    if (round_trip_us > 0)
        while (nanosleep(&wait, &wait) == -1 && errno == EINTR)
            ;
}

/* Names are resolved below the backing directory's descriptor. */
static const char *rel(const char *path) { return path[1] ? path + 1 : "."; }

static void full(char out[PATH_MAX], const char *path) {
    snprintf(out, PATH_MAX, "%s%s", root_path, path);
}

static int result(int rc) { return rc == -1 ? -errno : 0; }

static long long allocated(const struct stat *st) { return (long long)st->st_blocks * 512; }

/* One inode from the quota, refused past the limit. */
static int take_inode(void) {
    int rc = 0;
    pthread_mutex_lock(&quota.lock);
    if (quota.file_limit && quota.files + 1 > quota.file_limit)
        rc = -EDQUOT;
    else
        quota.files++;
    pthread_mutex_unlock(&quota.lock);
    return rc;
}

static void give_back(long long bytes, long long files) {
    pthread_mutex_lock(&quota.lock);
    quota.bytes -= bytes;
    quota.files -= files;
    pthread_mutex_unlock(&quota.lock);
}

/* What removing the name `path` frees: its blocks and inode when this is
 * its last name. Read before the removal, while the name still exists. */
static void freed_by_removal(const char *path, long long *bytes, long long *files) {
    struct stat st;
    *bytes = *files = 0;
    if (fstatat(root_fd, rel(path), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        (S_ISDIR(st.st_mode) || st.st_nlink == 1)) {
        *bytes = allocated(&st);
        *files = 1;
    }
}

/* Created entries belong to the user who asked, not to the daemon. */
static void own(const char *path) {
    struct fuse_context *ctx = fuse_get_context();
    if (geteuid() == 0 && ctx)
        (void)fchownat(root_fd, rel(path), ctx->uid, ctx->gid, AT_SYMLINK_NOFOLLOW);
}

static int sf_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    round_trip();
    if (fi)
        return result(fstat(fi->fh, st));
    return result(fstatat(root_fd, rel(path), st, AT_SYMLINK_NOFOLLOW));
}

static int sf_readlink(const char *path, char *buf, size_t size) {
    round_trip();
    ssize_t n = readlinkat(root_fd, rel(path), buf, size - 1);
    if (n == -1)
        return -errno;
    buf[n] = '\0';
    return 0;
}

/* Every creation: an inode from the quota, the call, the inode back if
 * the call failed, the entry made the caller's. */
#define CREATING(path, call)                                                                       \
    do {                                                                                           \
        round_trip();                                                                              \
        int taken = take_inode();                                                                  \
        if (taken)                                                                                 \
            return taken;                                                                          \
        if ((call) == -1) {                                                                        \
            int err = errno;                                                                       \
            give_back(0, 1);                                                                       \
            return -err;                                                                           \
        }                                                                                          \
        own(path);                                                                                 \
    } while (0)

static int sf_mknod(const char *path, mode_t mode, dev_t dev) {
    CREATING(path, mknodat(root_fd, rel(path), mode, dev));
    return 0;
}

static int sf_mkdir(const char *path, mode_t mode) {
    CREATING(path, mkdirat(root_fd, rel(path), mode));
    return 0;
}

static int sf_symlink(const char *target, const char *path) {
    CREATING(path, symlinkat(target, root_fd, rel(path)));
    return 0;
}

static int sf_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
    int fd = -1;
    CREATING(path, fd = openat(root_fd, rel(path), fi->flags | O_CREAT, mode));
    fi->fh = fd;
    return 0;
}

static int removing(const char *path, int flags) {
    long long bytes, files;
    round_trip();
    pthread_mutex_lock(&quota.lock);
    freed_by_removal(path, &bytes, &files);
    int rc = unlinkat(root_fd, rel(path), flags);
    if (rc == 0) {
        quota.bytes -= bytes;
        quota.files -= files;
    }
    pthread_mutex_unlock(&quota.lock);
    return result(rc);
}

static int sf_unlink(const char *path) { return removing(path, 0); }

static int sf_rmdir(const char *path) { return removing(path, AT_REMOVEDIR); }

static int sf_rename(const char *from, const char *to, unsigned int flags) {
    long long bytes = 0, files = 0;
    struct stat src, dst;
    round_trip();
    if (flags && !rename_flags)
        return -EINVAL;
    pthread_mutex_lock(&quota.lock);
    /* A rename over another entry removes that entry, unless it is the
     * same inode or the two are exchanged. */
    if (!(flags & RENAME_EXCHANGE) &&
        fstatat(root_fd, rel(from), &src, AT_SYMLINK_NOFOLLOW) == 0 &&
        fstatat(root_fd, rel(to), &dst, AT_SYMLINK_NOFOLLOW) == 0 && src.st_ino != dst.st_ino)
        freed_by_removal(to, &bytes, &files);
    int rc = renameat2(root_fd, rel(from), root_fd, rel(to), flags);
    if (rc == 0) {
        quota.bytes -= bytes;
        quota.files -= files;
    }
    pthread_mutex_unlock(&quota.lock);
    return result(rc);
}

static int sf_link(const char *from, const char *to) {
    round_trip();
    return result(linkat(root_fd, rel(from), root_fd, rel(to), 0));
}

static int sf_chmod(const char *path, mode_t mode, struct fuse_file_info *fi) {
    round_trip();
    if (fi)
        return result(fchmod(fi->fh, mode));
    return result(fchmodat(root_fd, rel(path), mode, 0));
}

static int sf_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi) {
    round_trip();
    if (fi)
        return result(fchown(fi->fh, uid, gid));
    return result(fchownat(root_fd, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW));
}

static int sf_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
    int fd = fi ? (int)fi->fh : openat(root_fd, rel(path), O_WRONLY);
    struct stat before, after;
    round_trip();
    if (fd == -1)
        return -errno;
    pthread_mutex_lock(&quota.lock);
    int rc = fstat(fd, &before);
    if (rc == 0)
        rc = ftruncate(fd, size);
    int err = errno;
    if (rc == 0 && fstat(fd, &after) == 0)
        quota.bytes += allocated(&after) - allocated(&before);
    pthread_mutex_unlock(&quota.lock);
    if (!fi)
        close(fd);
    return rc == -1 ? -err : 0;
}

static int sf_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi) {
    round_trip();
    if (fi)
        return result(futimens(fi->fh, tv));
    return result(utimensat(root_fd, rel(path), tv, AT_SYMLINK_NOFOLLOW));
}

static int sf_open(const char *path, struct fuse_file_info *fi) {
    round_trip();
    int fd = openat(root_fd, rel(path), fi->flags & ~O_CREAT);
    if (fd == -1)
        return -errno;
    fi->fh = fd;
    return 0;
}

static int sf_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)path;
    ssize_t n = pread(fi->fh, buf, size, off);
    return n == -1 ? -errno : (int)n;
}

/* Without a quota a write is a pwrite. With one, the blocks it allocates
 * are charged; a write that would pass the limit is refused whole: one at
 * or past the end of the file is undone by truncating back (what it wrote
 * was new), one into the middle is refused beforehand when the file has
 * holes it could fill. */
static int sf_write(const char *path, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi) {
    (void)path;
    if (!quota.on) {
        ssize_t n = pwrite(fi->fh, buf, size, off);
        return n == -1 ? -errno : (int)n;
    }
    struct stat before, after;
    int rc = 0;
    pthread_mutex_lock(&quota.lock);
    if (fstat(fi->fh, &before) == -1) {
        rc = -errno;
        goto out;
    }
    int appending = off >= before.st_size;
    int has_holes = allocated(&before) < before.st_size;
    if (quota.byte_limit && !appending && has_holes &&
        quota.bytes + (long long)size > quota.byte_limit) {
        rc = -EDQUOT;
        goto out;
    }
    ssize_t n = pwrite(fi->fh, buf, size, off);
    if (n == -1) {
        rc = -errno;
        goto out;
    }
    if (fstat(fi->fh, &after) == -1) {
        rc = -errno;
        goto out;
    }
    long long grown = allocated(&after) - allocated(&before);
    if (quota.byte_limit && grown > 0 && appending && quota.bytes + grown > quota.byte_limit) {
        if (ftruncate(fi->fh, before.st_size) == 0)
            rc = -EDQUOT;
        else
            rc = -errno;
        goto out;
    }
    quota.bytes += grown;
    rc = (int)n;
out:
    pthread_mutex_unlock(&quota.lock);
    return rc;
}

static int sf_statfs(const char *path, struct statvfs *st) {
    (void)path;
    round_trip();
    return result(fstatvfs(root_fd, st));
}

static int sf_release(const char *path, struct fuse_file_info *fi) {
    (void)path;
    round_trip();
    close(fi->fh);
    return 0;
}

static int sf_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
    (void)path;
    round_trip();
    return result(datasync ? fdatasync(fi->fh) : fsync(fi->fh));
}

static int sf_setxattr(const char *path, const char *name, const char *value, size_t size,
                       int flags) {
    char p[PATH_MAX];
    round_trip();
    full(p, path);
    return result(lsetxattr(p, name, value, size, flags));
}

static int sf_getxattr(const char *path, const char *name, char *value, size_t size) {
    char p[PATH_MAX];
    round_trip();
    full(p, path);
    ssize_t n = lgetxattr(p, name, value, size);
    return n == -1 ? -errno : (int)n;
}

static int sf_listxattr(const char *path, char *list, size_t size) {
    char p[PATH_MAX];
    round_trip();
    full(p, path);
    ssize_t n = llistxattr(p, list, size);
    return n == -1 ? -errno : (int)n;
}

static int sf_removexattr(const char *path, const char *name) {
    char p[PATH_MAX];
    round_trip();
    full(p, path);
    return result(lremovexattr(p, name));
}

static int sf_opendir(const char *path, struct fuse_file_info *fi) {
    round_trip();
    int fd = openat(root_fd, rel(path), O_RDONLY | O_DIRECTORY);
    if (fd == -1)
        return -errno;
    DIR *dir = fdopendir(fd);
    if (!dir) {
        int err = errno;
        close(fd);
        return -err;
    }
    fi->fh = (uint64_t)(uintptr_t)dir;
    return 0;
}

static int sf_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
    (void)path, (void)off, (void)flags;
    DIR *dir = (DIR *)(uintptr_t)fi->fh;
    struct dirent *entry;
    round_trip();
    rewinddir(dir);
    while ((entry = readdir(dir)))
        if (fill(buf, entry->d_name, NULL, 0, 0))
            break;
    return 0;
}

static int sf_releasedir(const char *path, struct fuse_file_info *fi) {
    (void)path;
    closedir((DIR *)(uintptr_t)fi->fh);
    return 0;
}

static int sf_access(const char *path, int mask) {
    round_trip();
    return result(faccessat(root_fd, rel(path), mask, AT_SYMLINK_NOFOLLOW));
}

static int sf_flock(const char *path, struct fuse_file_info *fi, int op) {
    (void)path;
    round_trip();
    if (!(op & LOCK_UN) && __atomic_fetch_add(&flock_asked, 1, __ATOMIC_SEQ_CST) >= flock_after)
        return -flock_refusal;
    return result(flock(fi->fh, op));
}

static void *sf_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
    (void)conn;
    cfg->use_ino = 1;     /* the backing inodes, so hard links stay visible */
    cfg->nullpath_ok = 1; /* open files are served by descriptor */
    cfg->hard_remove = 1; /* no .fuse_hidden files keeping directories full */
    cfg->attr_timeout = cfg->entry_timeout = cache_s;
    cfg->negative_timeout = 0;
    return NULL;
}

static struct fuse_operations operations = {
    .init = sf_init,           .getattr = sf_getattr,         .readlink = sf_readlink,
    .mknod = sf_mknod,         .mkdir = sf_mkdir,             .unlink = sf_unlink,
    .rmdir = sf_rmdir,         .symlink = sf_symlink,         .rename = sf_rename,
    .link = sf_link,           .chmod = sf_chmod,             .chown = sf_chown,
    .truncate = sf_truncate,   .open = sf_open,               .read = sf_read,
    .write = sf_write,         .statfs = sf_statfs,           .release = sf_release,
    .fsync = sf_fsync,         .setxattr = sf_setxattr,       .getxattr = sf_getxattr,
    .listxattr = sf_listxattr, .removexattr = sf_removexattr, .opendir = sf_opendir,
    .readdir = sf_readdir,     .releasedir = sf_releasedir,   .access = sf_access,
    .create = sf_create,       .utimens = sf_utimens,
};

static int compare_inodes(const void *a, const void *b) {
    ino_t x = *(const ino_t *)a, y = *(const ino_t *)b;
    return (x > y) - (x < y);
}

/* The backing directory's usage when mounted, hard links once. */
static int count(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)path, (void)type, (void)ftw;
    if (!S_ISDIR(st->st_mode) && st->st_nlink > 1) {
        ino_t *ino = malloc(sizeof *ino);
        *ino = st->st_ino;
        if (*(ino_t **)tsearch(ino, &counted_links, compare_inodes) != ino) {
            free(ino);
            return 0;
        }
    }
    quota.bytes += allocated(st);
    quota.files++;
    return 0;
}

static long long number(const char *name, long long fallback) {
    const char *value = getenv(name);
    return value && *value ? atoll(value) : fallback;
}

int main(int argc, char *argv[]) {
    if (argc < 3) {
        fprintf(stderr, "usage: SLOWFS_US=500 %s BACKING MOUNTPOINT [fuse options]\n", argv[0]);
        return 2;
    }
    if (!realpath(argv[1], root_path) || (root_fd = open(root_path, O_RDONLY | O_DIRECTORY)) == -1) {
        perror(argv[1]);
        return 1;
    }
    round_trip_us = number("SLOWFS_US", 500);
    if (getenv("SLOWFS_CACHE_S"))
        cache_s = atof(getenv("SLOWFS_CACHE_S"));
    rename_flags = number("SLOWFS_RENAME_FLAGS", 1) != 0;
    const char *refusal = getenv("SLOWFS_FLOCK");
    if (refusal && *refusal) {
        static const struct { const char *name; int value; } errors[] = {
            {"ENOLCK", ENOLCK}, {"ENOSYS", ENOSYS}, {"EOPNOTSUPP", EOPNOTSUPP}, {"EINVAL", EINVAL}};
        for (size_t i = 0; i < sizeof errors / sizeof *errors; i++)
            if (!strcmp(refusal, errors[i].name))
                flock_refusal = errors[i].value;
        if (!flock_refusal) {
            fprintf(stderr, "SLOWFS_FLOCK=%s: not one of ENOLCK ENOSYS EOPNOTSUPP EINVAL\n", refusal);
            return 2;
        }
        flock_after = number("SLOWFS_FLOCK_AFTER", 0);
        operations.flock = sf_flock;
    }
    quota.byte_limit = number("SLOWFS_QUOTA_KB", 0) * 1024;
    quota.file_limit = number("SLOWFS_QUOTA_FILES", 0);
    quota.on = quota.byte_limit || quota.file_limit;
    if (quota.on && nftw(root_path, count, 64, FTW_PHYS | FTW_MOUNT) == -1) {
        perror("counting the backing directory");
        return 1;
    }
    umask(0); /* the kernel has applied the caller's umask already */

    char threads[64];
    const char *args[64];
    int n = 0;
    args[n++] = argv[0];
    args[n++] = argv[2];
    args[n++] = "-o";
    args[n++] = geteuid() == 0 ? "default_permissions,allow_other,fsname=slowfs"
                               : "default_permissions,fsname=slowfs";
    snprintf(threads, sizeof threads, "max_threads=%lld", number("SLOWFS_THREADS", 10));
    args[n++] = "-o";
    args[n++] = threads;
    for (int i = 3; i < argc && n < 63; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    return fuse_main(n, (char **)args, &operations, NULL);
}
