package audit

import "syscall"

// statfsDir measures the filesystem that holds dir.
func statfsDir(dir string) (diskUsage, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return diskUsage{}, err
	}
	bs := uint64(st.Bsize)
	return diskUsage{size: st.Blocks * bs, free: st.Bfree * bs, avail: st.Bavail * bs}, nil
}
