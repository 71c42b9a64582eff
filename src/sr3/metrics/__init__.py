"""Image quality metrics: PSNR, SSIM and SR3 consistency as SR papers compute them (`scores` holds their table), FID/KID, CAS."""
